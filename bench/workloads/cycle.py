# A daily cycle shortened to five minutes: memory and CPU rise and fall together, over a
# slowly growing base.
import math, time
start = time.monotonic()
held = []
while True:
    now = time.monotonic() - start
    phase = math.sin(2 * math.pi * now / 300)
    want = int((60 + 40 * phase + now / 60) * (1 << 20))
    have = sum(map(len, held))
    while have < want:
        held.append(bytearray(1 << 20)); have += 1 << 20
    while have > want + (1 << 20) and held:
        have -= len(held.pop())
    busy_until = time.monotonic() + 0.1 * (0.6 + 0.4 * phase)
    while time.monotonic() < busy_until:
        pass
    time.sleep(0.9)
