# Per-GPU timeline of one MoE layer from results.csv (sim or real: same schema).
# Usage: gnuplot -e "datafile='results.csv'; outfile='phases.png'; n_ranks=16" plots/phases.gp
# Columns: rank,node,phase,start_us,end_us,time_us,tokens,send_bytes,recv_bytes
if (!exists("datafile")) datafile = 'results.csv'
if (!exists("outfile")) outfile = 'phases.png'
if (!exists("n_ranks")) n_ranks = 16

set terminal pngcairo size 1200, 700 noenhanced font ",11"
set output outfile
set datafile separator ","
set title "MoE layer timeline per GPU (dispatch -> expert GroupGEMM -> combine)"
set xlabel "time since layer start (µs)"
set ylabel "GPU (EP rank)"
set yrange [n_ranks - 0.4:-0.6]
if (n_ranks <= 32) set ytics 1; else set ytics autofreq; set format y "%.0f"
set xrange [0:*]
set grid xtics
set key outside top center horizontal
set style fill solid 0.9 border lc rgb "#202020"
half = n_ranks > 128 ? 0.5 : 0.4

# Keep only the rows of one phase; others become NaN and are skipped.
is(p) = strcol(3) eq p ? 1 : NaN
plot datafile every ::1 using (($4 + $5) / 2 * is("dispatch")):1:4:5:($1 - half):($1 + half) \
       with boxxyerror lc rgb "#4477aa" title "dispatch", \
     '' every ::1 using (($4 + $5) / 2 * is("expert_gemm")):1:4:5:($1 - half):($1 + half) \
       with boxxyerror lc rgb "#ee6677" title "expert GroupGEMM", \
     '' every ::1 using (($4 + $5) / 2 * is("combine")):1:4:5:($1 - half):($1 + half) \
       with boxxyerror lc rgb "#228833" title "combine"
