"""Exit codes and the one error type for bad input, shared by every command."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader quit


class UserError(Exception):
    """Bad input from the user: printed as one message, exit code 2."""
