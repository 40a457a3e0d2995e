"""Training engine: sharded jitted steps, checkpoints with exact resume, logging, samples."""
