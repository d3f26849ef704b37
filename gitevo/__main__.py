from gitevo.cli import main

main()
