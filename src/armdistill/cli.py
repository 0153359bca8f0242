"""Command-line entry point."""


def main(argv=None) -> int:
    return 0
