"""What the notebooks call: one façade per stage (``stages``) and what the notebooks show (``views``)."""
