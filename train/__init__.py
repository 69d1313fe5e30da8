"""The training layer, installed as sgfast.train: the trainers behind `sgfast train-*`."""
