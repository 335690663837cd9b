"""bins stage."""
