import json,sys,collections
p=json.load(open(sys.argv[1]))
nodes={n['id']:n for n in p['nodes']}
parent={}
for n in p['nodes']:
    for c in n.get('children',[]): parent[c]=n['id']
samples=p['samples']; deltas=p['timeDeltas']
self_t=collections.Counter(); total_t=collections.Counter()
for s,d in zip(samples,deltas):
    n=nodes[s]; cf=n['callFrame']
    key=f"{cf['functionName'] or '(anon)'} {cf['url'].split('/')[-1]}:{cf['lineNumber']}"
    self_t[key]+=d
    seen=set(); x=s
    while x is not None:
        cf=nodes[x]['callFrame']; k=f"{cf['functionName'] or '(anon)'} {cf['url'].split('/')[-1]}:{cf['lineNumber']}"
        if k not in seen: total_t[k]+=d; seen.add(k)
        x=parent.get(x)
tot=sum(deltas)
print("total ms",tot/1000)
print("--self")
for k,v in self_t.most_common(25): print(f"{v/1000:8.1f} {k}")
print("--total")
for k,v in total_t.most_common(40): print(f"{v/1000:8.1f} {k}")
