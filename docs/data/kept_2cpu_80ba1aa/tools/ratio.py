import re,sys,glob,statistics as st,collections
# ratio.py PREFIX NUM DEN : per process ratio NUM/DEN of each benchmark, medians per binary
pref,num,den=sys.argv[1:4]
unit={'ns':1,'us':1e3,'ms':1e6,'s':1e9}
R=collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(f'/tmp/m/out/{pref}_*.txt')):
    base=f.split('/')[-1][len(pref)+1:-4]
    b=base.rsplit('_',1)[0] if '_' in base else 'm'
    rows={}
    for line in open(f):
        m=re.match(r'^(BM_\S+?)(_median)?\s+([\d.e+]+) (ns|us|ms|s)\s',line)
        if m and not re.search(r'_(mean|stddev|cv)$',m.group(1)): rows[m.group(1)]=float(m.group(3))*unit[m.group(4)]
    for k,v in rows.items():
        if f'/{num}/' in k:
            d=k.replace(f'/{num}/',f'/{den}/')
            if d in rows: R[k.replace(f'/{num}/','/')][b].append(v/rows[d])
bs=sorted({b for v in R.values() for b in v})
print('row',*bs)
for k,v in R.items():
    print(k,*[f'{st.median(v[b]):.2f}' if v[b] else '-' for b in bs],' '.join('['+','.join(f'{x:.2f}' for x in v[b])+']' for b in bs))
