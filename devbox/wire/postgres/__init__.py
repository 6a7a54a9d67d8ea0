"""PostgreSQL (frontend/backend protocol v3) as a devbox dependency kind: ``kind.POSTGRES``."""
