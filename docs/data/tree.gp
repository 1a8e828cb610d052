# BM_Tree: ns per node against nodes, one line per allocator, 1 and 2 threads.
#   gnuplot docs/data/tree.gp   (from the repository root; reads docs/data/tree_2cpu.dat)
set terminal pngcairo size 1100,450 font ",10"
set output "docs/data/tree_97e7003.png"  # docs/tree.png is the chart of scripts/plot_large.sh
set multiplot layout 1,2 title "BM\\_Tree: building and destroying a document tree (2-vCPU machine, wall time per node)"
set logscale x
set xlabel "nodes per tree"
set ylabel "ns per node (both threads together at 2 threads)"
set key top left
set grid
names = "std syncpool\\_allocator syncpool(pmr) new\\_delete mimalloc"
set title "1 thread"
plot for [i=2:6] "docs/data/tree_2cpu.dat" using 1:i with linespoints title word(names, i-1)
set title "2 threads"
plot for [i=7:11] "docs/data/tree_2cpu.dat" using 1:i with linespoints title word(names, i-6)
unset multiplot
