"""The engine: composes mocks, runtime, replay and the watcher; the CLI and the TUI drive it."""
