"""Names of a transformers export (``armdistill export --format hf``), shared by the export, the
code it generates and the readers of it. Nothing here imports anything: the generated
configuration file carries this module whole."""

# config.json entry holding the whole StudentConfig, as a dict
STUDENT_KEY = "armdistill_student"
# model_type of exports that bring their own model code
REMOTE_MODEL_TYPE = "armdistill"
# where the generated ArmdistillModel keeps the student: its weights' name prefix
REMOTE_PREFIX = "student."
HEADS_WEIGHTS = "heads.safetensors"
HEADS_CONFIG = "heads.json"
