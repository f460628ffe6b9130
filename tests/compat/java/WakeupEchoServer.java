// WakeupEchoServer PORT - an echo server built the way NIO event loops are
// (Netty, Jetty, Tomcat's NIO connector): one loop thread sleeps in
// Selector.select() with no timeout and does all the reading and writing on
// non-blocking channels; another thread accepts on a blocking
// ServerSocketChannel and hands each new channel to the loop, which only
// sees it if Selector.wakeup() gets the loop out of its select(). Two ways
// of handing over, in turn:
//   even connections: queued, wakeup(), the loop thread registers them;
//   odd connections: registered by the acceptor itself while the loop may
//     be in select(), then wakeup() (JDK 11+: the registration is seen by
//     the next selection).
// Each connection's bytes are echoed back; a partial write stops reading
// that connection until the rest is out (OP_WRITE). At the client's EOF the
// server finishes writing and closes. SIGTERM: the shutdown hook stops the
// loop (wakeup again) and prints the counts.
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class WakeupEchoServer {
  static final class Conn {
    final int id;
    final ByteBuffer buf = ByteBuffer.allocateDirect(65536);
    boolean eof;
    long bytes;

    Conn(int id) {
      this.id = id;
    }
  }

  static volatile boolean running = true;
  static long accepted, closed, echoed;

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    Selector sel = Selector.open();
    ServerSocketChannel ssc = ServerSocketChannel.open();
    ssc.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), port), 64);
    ConcurrentLinkedQueue<SocketChannel> handed = new ConcurrentLinkedQueue<>();
    CountDownLatch loopDone = new CountDownLatch(1);

    Thread loop = new Thread(() -> {
      try {
        while (running) {
          sel.select();
          SocketChannel nc;
          while ((nc = handed.poll()) != null) {
            nc.configureBlocking(false);
            nc.register(sel, SelectionKey.OP_READ, new Conn((int) accepted));
          }
          Iterator<SelectionKey> it = sel.selectedKeys().iterator();
          while (it.hasNext()) {
            SelectionKey k = it.next();
            it.remove();
            if (k.isValid()) serve(k);
          }
        }
      } catch (IOException e) {
        System.err.println("loop: " + e);
      } finally {
        loopDone.countDown();
      }
    }, "event-loop");
    loop.start();

    Thread acceptor = new Thread(() -> {
      try {
        for (int n = 0; ; n++) {
          SocketChannel ch = ssc.accept();
          synchronized (WakeupEchoServer.class) {
            accepted++;
          }
          if (n % 2 == 0) {
            handed.add(ch);
          } else {
            ch.configureBlocking(false);
            ch.register(sel, SelectionKey.OP_READ, new Conn(n));
          }
          sel.wakeup();
        }
      } catch (ClosedChannelException e) {
        // the shutdown hook closed the listener
      } catch (IOException e) {
        System.err.println("acceptor: " + e);
      }
    }, "acceptor");
    acceptor.setDaemon(true);
    acceptor.start();

    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      running = false;
      sel.wakeup();
      try {
        ssc.close();
        if (!loopDone.await(5, TimeUnit.SECONDS)) {
          System.out.println("shutdown: the event loop did not leave select() within 5 s of wakeup()");
          return;
        }
      } catch (Exception e) {
        System.err.println("shutdown: " + e);
      }
      System.out.println("accepted " + accepted + ", closed " + closed + ", echoed " + echoed + " bytes");
    }));
    System.out.println("listening on " + port);
  }

  /** One ready connection: read what there is, echo it, close after EOF. */
  static void serve(SelectionKey k) throws IOException {
    SocketChannel ch = (SocketChannel) k.channel();
    Conn c = (Conn) k.attachment();
    try {
      if (c.buf.position() == 0 && !c.eof) {
        int n = ch.read(c.buf);
        if (n < 0) c.eof = true;
      }
      c.buf.flip();
      int w = ch.write(c.buf);
      c.bytes += w;
      synchronized (WakeupEchoServer.class) {
        echoed += w;
      }
      boolean pending = c.buf.hasRemaining();
      c.buf.compact();
      if (pending) {
        k.interestOps(SelectionKey.OP_WRITE);
      } else if (c.eof) {
        ch.close();
        closed++;
      } else {
        k.interestOps(SelectionKey.OP_READ);
      }
    } catch (IOException e) {
      System.err.println("conn " + c.id + " after " + c.bytes + " bytes: " + e);
      ch.close();
      closed++;
    }
  }
}
