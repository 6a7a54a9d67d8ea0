"""``devbox init``'s readers and decisions: the Dockerfile and Compose readers, the
proposal (which service, port, command, dependencies) and its rendering as a profile.

Pure, like ``devbox.core``: these modules take text and return values; the CLI
(``devbox.cli.cmd_init``) reads the files. Only ``devbox init`` uses them, which is why
they are not in the core.
"""
