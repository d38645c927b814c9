"""The real-time layer below :mod:`eden.qemu` and :mod:`eden.agent`.

What every real-time piece needs and nothing above it: clocks (:mod:`.clock`), one monotonic
deadline with a parent (:mod:`.deadline`), process supervision (:mod:`.procs`), the run's
working directory (:mod:`.workdir`), the serial console over any byte source (:mod:`.console`) and SSH
(:mod:`.ssh`). It imports nothing from ``eden.backends``, ``eden.qemu``,
``eden.agent`` or ``eden.cli``; ``tests/test_runtime_layers.py`` holds it to that.
"""
