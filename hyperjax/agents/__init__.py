"""SAC with a context method plugged in: the agent (``agent``), its losses (``sac``) and the
replay buffer (``replay``)."""
