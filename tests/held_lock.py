"""A degradation that takes a lock of its module's: the stand-in for the locks that FFmpeg's, x264's and
tqdm's threads hold now and then in the process that starts the loader workers."""

import threading

from litevsr.data.degradations import SimpleDegradation

LOCK = threading.Lock()


class LockedDegradation(SimpleDegradation):
    def __call__(self, hq, scale, generator):
        with LOCK:
            return super().__call__(hq, scale, generator)
