"""AdaBERT (IJCAI 2020): task-specific compression by differentiable search of a small convolutional student.

Read ``pipeline.py`` first: its docstring walks through the method stage by stage and names the module of each.
"""
