from litevsr.cli import main

main()
