"""Train and test one configuration: `python run_experiment.py net=<net> dataset=<dataset> [key=value ...]`.

See README.md and `cfg/` for the options; `--help` lists the config groups.
"""

from engine.cli import main
from engine.experiment import run_experiment

if __name__ == "__main__":
    main(run_experiment)
