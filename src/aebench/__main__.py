from aebench.cli import command

command()
