from kedahttp.cli.main import main

main()
