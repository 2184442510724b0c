"""A FIFO for tests of "never open a non-regular file", with a watchdog so that code which does
open it fails the test instead of blocking it forever."""
import contextlib
import os
import threading


@contextlib.contextmanager
def guarded_fifo(path, every_s=3.0):
    """Makes a FIFO at `path`; yields a dict whose "opened" turns True if a reader was found
    blocked on it (checked every `every_s`; the watchdog unblocks it with an empty write end)."""
    os.mkfifo(path)
    state = {"opened": False}
    done = threading.Event()

    def watch():
        while not done.wait(every_s):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: nobody is reading
            except OSError:
                continue
            state["opened"] = True
            os.close(fd)

    watchdog = threading.Thread(target=watch, daemon=True)
    watchdog.start()
    try:
        yield state
    finally:
        done.set()
        watchdog.join()
