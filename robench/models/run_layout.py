"""The files of a run directory, by name: every layer that reads or writes one uses these."""

WEIGHTS = "model.safetensors"
METADATA = "run.json"
TRAIN_STATE = "train_state.safetensors"  # optimiser state of an unfinished run (for --resume)
