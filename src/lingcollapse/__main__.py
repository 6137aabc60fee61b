from lingcollapse.cli import run

run()
