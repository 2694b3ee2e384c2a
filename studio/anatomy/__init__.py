"""The anatomy process: `python -m studio.anatomy CONFIG.json ...` builds each model on the meta
device with transformers' own code and prints what it is made of (parameters, linear layers and
their shapes, experts, norms, what bitsandbytes quantizes and what PEFT's LoRA targets) as JSON.

It imports torch, so the CLI and the app reach it only as a process (studio.planning.anatomy
runs it and caches the answer per config)."""
