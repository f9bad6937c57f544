"""Looking inside models: per-layer linear probes and DoLa contrastive-layer decoding."""
