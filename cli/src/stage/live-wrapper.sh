#!/bin/sh
# live's exec wrapper for attached functions of managed runtimes: Lambda runs
# AWS_LAMBDA_EXEC_WRAPPER=/opt/live-wrapper with the runtime's own command line as its
# arguments (e.g. /var/lang/bin/python3.12 /var/runtime/bootstrap.py). The stub starts in the
# runtime's place and is handed that command line, kept for running the deployed code when no
# developer serves the function.
here=$(dirname "$0")
exec "$here/live/bootstrap" "$@"
