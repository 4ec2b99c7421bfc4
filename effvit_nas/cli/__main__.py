from effvit_nas.cli import main

main()
