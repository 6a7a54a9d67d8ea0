"""The command line: argument parsing, output and error rendering. No logic of its own."""
