import re,glob,statistics as st,collections
unit={'ns':1,'us':1e3,'ms':1e6,'s':1e9}
S=collections.defaultdict(list); R=collections.defaultdict(list)
for f in sorted(glob.glob('/tmp/m/out/scale_*.txt')):
    rows={}
    for line in open(f):
        m=re.match(r'^BM_Tree/(\S+)/(\d+)/real_time/threads:(\d)\s+([\d.e+]+) (ns|us|ms|s)',line)
        if m: rows[(m.group(1),int(m.group(2)),int(m.group(3)))]=float(m.group(4))*unit[m.group(5)]
    for (a,n,t),v in rows.items():
        if t==1 and (a,n,2) in rows: S[(a,n)].append(v/rows[(a,n,2)])
        if a!='mimalloc_allocator' and (('mimalloc_allocator',n,t)) in rows: R[(a,n,t)].append(v/rows[('mimalloc_allocator',n,t)])
print('2 threads / 1 (median of 5 processes, [each])')
for k in sorted(S, key=lambda k:(k[1],k[0])): print(k[1],k[0],f'{st.median(S[k]):.2f}','['+','.join(f'{x:.2f}' for x in S[k])+']')
print('/ mimalloc_allocator')
for k in sorted(R, key=lambda k:(k[1],k[2],k[0])): print(k[1],k[2],'t',k[0],f'{st.median(R[k]):.2f}','['+','.join(f'{x:.2f}' for x in R[k])+']')
