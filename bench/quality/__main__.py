from bench.quality.run import main

main()
