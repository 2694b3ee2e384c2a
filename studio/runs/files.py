"""The names of the files and folders in a run folder (runs/<id>/...), in one place for the modules
that read or write them."""

EVENTS_FILE = "events.jsonl"  # the trainer's record of the run: studio.runs.events
PROFILE_FILE = "profile.toml"
PLAN_FILE = "plan.json"
LAYOUT_FILE = "launch.json"
ACCELERATE_CONFIG = "accelerate_config.yaml"
STATUS_FILE = "status.json"
LOG_FILE = "trainer.log"
PREFLIGHT_FILE = "preflight.json"
CHECKPOINTS = "checkpoints"
FINAL = "final"
BASE_MODEL = "base-model"  # the built-in tiny model or a probe's random one, written inside the run
