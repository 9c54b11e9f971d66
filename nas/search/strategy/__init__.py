"""Strategy: the samplers and pruners a config names (`samplers`), and the samplers that choose
whole patterns (`guided`)."""
