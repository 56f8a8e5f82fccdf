"""Networks: torch-initialised layers, the actor / critic / dynamics model, the context
encoders and the hypernetwork."""
