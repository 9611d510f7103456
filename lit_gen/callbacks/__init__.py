"""Lightning callbacks lit_gen.fit adds to every run."""
