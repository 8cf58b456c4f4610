"""torch + diffusers. Imported lazily: only by the worker thread, the CLI, tests and benchmarks."""

from diffusers.utils import logging as _diffusers_logging
from transformers.utils import logging as _transformers_logging

# Their warnings and tqdm bars go to stderr, which a windowed app does not have;
# anything the user must know is raised as an error with a message instead.
_diffusers_logging.set_verbosity_error()
_diffusers_logging.disable_progress_bar()
_transformers_logging.set_verbosity_error()
_transformers_logging.disable_progress_bar()
