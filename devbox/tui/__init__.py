"""The Textual dashboard: ``devbox up`` on a terminal. The only package that imports Textual.

Entry points: ``devbox.tui.app.run_dashboard(driver, keep=False)`` and
``devbox.tui.app.make_app(driver)``; ``driver`` is a ``devbox.engine.driver.EngineDriver``.
"""
