"""``python -m fishcount ...``: the ``fishcount`` command (for environments where the script is not on PATH)."""
from fishcount.cli import main

if __name__ == "__main__":
    main(prog_name="fishcount")
