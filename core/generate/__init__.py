"""Generation: choosing tokens from logits, the generation loop, and a loaded model ready to talk to."""
