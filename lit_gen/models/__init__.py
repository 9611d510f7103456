"""Model families. Each is a ``GenerativeModule`` registered by name in ``lit_gen.registry``."""
