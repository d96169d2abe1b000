"""The model as plain data: its config, its parameters (GPT-2 names), the numpy reference forward
pass, and the interface every backend implements. Read config -> params -> reference, then one
backend's model.py, to read a GPT top to bottom."""
