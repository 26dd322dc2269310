from faceage.cli import main

main()
