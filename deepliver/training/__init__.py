"""`deepliver train`: phantom datasets cached as memory maps, a Dice + cross-entropy loop with
checkpoints and resume, and a model folder with its card at the end."""
