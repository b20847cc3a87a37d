"""Exit codes of every diskkit command, in one place.

``check`` uses OK and FINDINGS, ``validate`` OK, FINDINGS and WARNINGS; ``diagnose`` uses OK
(will boot), FINDINGS (will not boot) and UNKNOWN (cannot tell). Errors use the codes below
whatever the command.
"""

OK = 0
#: The command ran and found something that blocks (an unsafe image, a volume that will not boot).
FINDINGS = 1
#: Bad usage, or input that cannot be read (missing file, bad URI, truncated or hostile image).
BAD_INPUT = 2
#: This host lacks a program, a kernel module, a binding or the rights the command needs.
HOST = 3
#: The command ran but cannot give a verdict (``diagnose``: will_boot is null).
UNKNOWN = 4
#: ``validate``: ready for upload, with warnings (cloud readiness: no cloud-init, no serial
#: console...). 0 is ready, 1 blocked.
WARNINGS = 5
#: A bug in diskkit.
INTERNAL = 70
#: Interrupted by Ctrl-C (128 + SIGINT), after tearing down what was set up.
INTERRUPTED = 130
#: stdout was closed by its reader (``diskkit info x | head -1``): 128 + SIGPIPE, no message.
BROKEN_PIPE = 141
#: Ended by SIGTERM (128 + SIGTERM; SIGHUP gives 129), after tearing down what was set up.
TERMINATED = 143
