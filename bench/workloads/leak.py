# A steady leak: about 256 KiB a second kept for good, in uneven pieces.
import random, time
random.seed(1)
kept = []
while True:
    kept.append(bytearray(random.randint(128, 384) << 10))
    time.sleep(1)
