# A service with bursts of work at uneven times, each holding a working set while it runs.
import random, time
random.seed(4)
while True:
    time.sleep(random.uniform(15, 45))
    working = bytearray(random.randint(20, 60) << 20)
    busy_until = time.monotonic() + random.uniform(1, 4)
    while time.monotonic() < busy_until:
        working[random.randrange(len(working))] = 1
    del working
