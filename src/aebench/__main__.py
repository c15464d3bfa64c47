from aebench.cli import main

main()
