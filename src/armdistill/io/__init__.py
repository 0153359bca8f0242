"""Reading foreign checkpoint files safely."""
