"""What can be said about a model without training it: parameters, MACs, shapes, receptive field."""
