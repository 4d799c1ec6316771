"""``python -m bertnas`` (also ``torchrun --nproc_per_node N -m bertnas run ...``): the command line."""
import sys

from .cli import main

if __name__ == "__main__":  # importing this module (e.g. walking the package) runs nothing
    sys.exit(main())
