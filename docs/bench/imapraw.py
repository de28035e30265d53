# raw IMAP timing for docs/BENCHMARKS.md "IMAP at 100,000 messages": sends each command and reads until its tagged
# reply without parsing (client cost ~0); prints wall time, the server process CPU time and peak VmRSS.
# usage: imapraw.py PID(0 = newest Dovecot imap process) PORT USER PASS [REPS]; ENVSYNC=1: the ENVELOPE sync only;
# HDRSYNC=1: the header sync only; DOVE_MASTER=PID: PID 0 is the newest imap process of that Dovecot master
# (not another Dovecot's on a shared machine)
import socket, time, sys, threading, os
PID=int(sys.argv[1]); PORT=int(sys.argv[2]); USER=sys.argv[3]; PASS=sys.argv[4]; REPS=int(sys.argv[5]) if len(sys.argv)>5 else 1
peak=[0]; stop=[False]
def rss(pid):
    try:
        for l in open(f'/proc/{pid}/status'):
            if l.startswith('VmRSS'): return int(l.split()[1])//1024
    except FileNotFoundError: return 0
s=socket.create_connection(('127.0.0.1',PORT)); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4<<20)
buf=bytearray(); n=[0]
def cmd(c):
    n[0]+=1; tag=b'zq%d' % n[0]
    s.sendall(tag+b' '+c.encode()+b'\r\n')
    end=b'\r\n'+tag+b' '
    tot=0; tail=b'\r\n'
    while True:
        d=s.recv(1<<20)
        if not d: raise SystemExit('closed')
        tot+=len(d); w=tail+d
        i=w.find(end)
        if i>=0:
            line=w[i+2:w.find(b'\r\n',i+2)]
            if not line.startswith(tag+b' OK'): print('!!', line)
            return tot
        tail=w[-64:]
s.recv(4096)
cmd(f'LOGIN {USER} "{PASS}"')
pid=PID
if pid==0:
    import subprocess; pid=int(subprocess.check_output(['pgrep','-n','-x','imap']+(['-P',os.environ['DOVE_MASTER']] if os.environ.get('DOVE_MASTER') else [])).split()[0])
import os
TCK=os.sysconf('SC_CLK_TCK')
def cpu(pid):
    try:
        f=open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
        return (int(f[11])+int(f[12]))/TCK
    except FileNotFoundError: return 0
def watch():
    while not stop[0]:
        peak[0]=max(peak[0], rss(pid)); time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
cmd('SELECT INBOX')
for rep in range(REPS):
  for name,c in ([('header sync','UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])')] if os.environ.get('HDRSYNC') else [('envelope sync','UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)')] if os.environ.get('ENVSYNC') else [('header sync','UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])'),
               ('flags sync','UID FETCH 1:* (UID FLAGS)'),
               ('store -seen','UID STORE 1:* -FLAGS.SILENT (\\Seen)'),
               ('store +seen','UID STORE 1:* +FLAGS.SILENT (\\Seen)'),
               ('search text','UID SEARCH TEXT quarterly'),
               ('search body miss','UID SEARCH BODY zzqqnothere')]):
    peak[0]=0; c0=cpu(pid); t=time.time(); b=cmd(c); el=time.time()-t; c1=cpu(pid)
    print(f'{name:18s} {el:6.3f} s  cpu {c1-c0:6.2f} s  {b/1e6:7.2f} MB  peak rss {peak[0]} MB', flush=True)
cmd('LOGOUT'); stop[0]=True
print('rss after logout', rss(pid))
