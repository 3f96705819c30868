"""Process-level signal handling shared by every long-running entry point (the
`da3_ros` commands, da3_node, the trainer). Standard library only, so any layer
may call it."""

from __future__ import annotations


def install_signal_handlers() -> None:
    """Call first thing in an entry point.

    * SIGINT stops cleanly even when it was inherited as ignored: a shell script's
      background job starts with SIGINT ignored, and launch, test harnesses and
      `kill -INT` stop nodes with SIGINT; ignored, the process would only die by
      SIGKILL, without its clean shutdown.
    * SIGUSR1 prints every thread's Python stack to stderr: a process that hangs
      (in DDS, on a GPU) says where, without a debugger.
    """
    import faulthandler
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (ValueError, OSError, AttributeError):
        pass  # stderr is not a file (called in-process under a capture): nothing to dump to
