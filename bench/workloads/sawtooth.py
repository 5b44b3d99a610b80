# A garbage-collected heap: grows about 1 MiB a second, then drops to its floor once past
# 120 MiB; the part that survives each collection creeps upward.
import random, time
random.seed(2)
survivors, garbage = [], []
while True:
    garbage.append(bytearray(random.randint(768, 1280) << 10))
    if sum(map(len, garbage)) > 100 << 20:
        survivors.append(bytearray(1 << 20))
        garbage.clear()
    time.sleep(1)
