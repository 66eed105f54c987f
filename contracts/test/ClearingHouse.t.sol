// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {EscapeHatch} from "../src/EscapeHatch.sol";
import {InsuranceFund} from "../src/InsuranceFund.sol";
import {PriceBounds} from "../src/PriceBounds.sol";
import {Vault} from "../src/Vault.sol";
import {HxTimelock} from "../src/governance/HxTimelock.sol";
import {AggregatorV3Interface} from "../src/oracle/AggregatorV3Interface.sol";
import {HxPriceAggregator} from "../src/oracle/HxPriceAggregator.sol";
import {SumTree} from "../src/libraries/SumTree.sol";
import {Valuation} from "../src/libraries/Valuation.sol";
import {ExpiringPause} from "../src/utils/ExpiringPause.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {MockSmartAccount} from "./helpers/MockSmartAccount.sol";
import {TreeBuilder} from "./helpers/TreeBuilder.sol";

contract ClearingHouseTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    /// alice 10,000 USDC, bob 5 WETH, carol 2,500 USDC, credited by batch 1.
    function _seed() internal {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        _deposit(carol, address(usdc), 2500e6);
        _submit();
    }

    /// Submit `b` as the operator expecting `err`, and check nothing changed.
    function _rejects(ClearingHouse.Batch memory b, bytes memory err) internal {
        bytes32 before = _digest();
        vm.expectRevert(err);
        vm.prank(operator);
        ch.submitBatch(b);
        assertEq(_digest(), before, "state unchanged");
    }

    function _oneWithdrawal(ClearingHouse.SignedWithdrawal memory w)
        internal
        view
        returns (ClearingHouse.Batch memory b)
    {
        b = _batch();
        b.withdrawals = new ClearingHouse.SignedWithdrawal[](1);
        b.withdrawals[0] = ClearingHouse.SignedWithdrawal(
            w.account, w.token, w.amount, w.destination, w.nonce, w.expiry, w.signature
        ); // a copy: tests edit it
    }

    // ------------------------------------------------------------------ constructor

    function _wire(ClearingHouse.Config memory c, uint256 floor, uint256 caps)
        internal
        returns (bytes memory)
    {
        return _wire(c, floor, caps, _watchers());
    }

    ClearingHouse internal wired; // the last `_wire` that succeeded
    ClearingHouse.InitialPriceFeed[] internal wireFeeds; // the price feeds `_wire` passes (none unless a test sets them)

    function _wire(ClearingHouse.Config memory c, uint256 floor, uint256 caps, address[] memory watchers)
        internal
        returns (bytes memory)
    {
        HxTimelock tl = new HxTimelock(floor, floor, governor);
        uint64 n = vm.getNonce(address(this));
        address chAt = vm.computeCreateAddress(address(this), n + 2);
        Vault v = new Vault(chAt, address(0xbeef), address(tl), guardian, MAX_PAUSE, tokens);
        InsuranceFund f = new InsuranceFund(chAt, address(v), address(tl));
        try new ClearingHouse(v, f, tl, operator, guardian, watchers, c, _caps(caps), wireFeeds) returns (
            ClearingHouse made
        ) {
            wired = made;
            return "";
        } catch (bytes memory err) {
            return err;
        }
    }

    /// Audit A-1's residual: a deployment sets its price feeds in the constructor, so prices are bounded from the
    /// first batch on (through governance they wait for the timelock); the same rules as `setPriceFeed`.
    function test_constructor_setsInitialPriceFeeds() public {
        HxPriceAggregator feed = new HxPriceAggregator(8, "ETH / USD", address(this));
        wireFeeds.push(ClearingHouse.InitialPriceFeed(address(weth), address(feed), 20_000, 1 hours));
        assertEq(_wire(_config(), DELAY_FLOOR, 3), "");
        (AggregatorV3Interface f, uint32 dev, uint32 age) = wired.priceBounds().priceFeed(address(weth));
        assertEq(address(f), address(feed));
        assertEq(dev, 20_000);
        assertEq(age, 1 hours);
        (f,,) = wired.priceBounds().priceFeed(address(wbtc));
        assertEq(address(f), address(0), "no feed given, none set");
        wireFeeds[0].token = address(usdc); // the numeraire is pinned, never fed
        assertEq(
            _wire(_config(), DELAY_FLOOR, 3),
            abi.encodeWithSelector(PriceBounds.BadPriceFeed.selector, address(usdc), 20_000, 1 hours)
        );
        wireFeeds[0] = ClearingHouse.InitialPriceFeed(address(weth), address(feed), 0, 1 hours);
        assertEq(
            _wire(_config(), DELAY_FLOOR, 3),
            abi.encodeWithSelector(PriceBounds.BadPriceFeed.selector, address(weth), 0, 1 hours)
        );
        wireFeeds[0] = ClearingHouse.InitialPriceFeed(address(0xdead), address(feed), 20_000, 1 hours);
        assertEq(
            _wire(_config(), DELAY_FLOOR, 3),
            abi.encodeWithSelector(PriceBounds.TokenNotListed.selector, address(0xdead))
        );
    }

    function test_constructor_configRules() public {
        ClearingHouse.Config memory c = _config();
        assertEq(_wire(c, DELAY_FLOOR, 3), "");
        c.outflowPeriod = 0;
        assertEq(_wire(c, DELAY_FLOOR, 3), abi.encodeWithSelector(ClearingHouse.BadConfig.selector, 1));
        c = _config();
        c.disputeWindow = FREEZE_PERIOD;
        assertEq(_wire(c, DELAY_FLOOR, 3), abi.encodeWithSelector(ClearingHouse.BadConfig.selector, 2));
        c = _config();
        c.maxPause = FREEZE_PERIOD;
        assertEq(_wire(c, DELAY_FLOOR, 3), abi.encodeWithSelector(ClearingHouse.BadConfig.selector, 3));
        c = _config();
        c.maxPause = MAX_PAUSE / 2;
        assertEq(_wire(c, DELAY_FLOOR, 3), abi.encodeWithSelector(ClearingHouse.BadConfig.selector, 4));
        c = _config();
        c.forcedWithdrawalPeriod = DISPUTE_WINDOW + OUTFLOW_PERIOD + MAX_PAUSE; // a pause counts too (audit A-5)
        assertEq(_wire(c, DELAY_FLOOR, 3), abi.encodeWithSelector(ClearingHouse.BadConfig.selector, 5));
        c.forcedWithdrawalPeriod = DISPUTE_WINDOW + OUTFLOW_PERIOD + MAX_PAUSE + 1;
        assertEq(_wire(c, DELAY_FLOOR, 3), "");
        c = _config();
        assertEq(
            _wire(c, FREEZE_PERIOD, 3),
            abi.encodeWithSelector(ClearingHouse.DelayFloorTooLow.selector, FREEZE_PERIOD, FREEZE_PERIOD)
        );
        assertEq(_wire(c, DELAY_FLOOR, 2), abi.encodeWithSelector(ClearingHouse.OutflowCapsMismatch.selector));
        assertEq(
            _wire(c, DELAY_FLOOR, 3, new address[](1)),
            abi.encodeWithSelector(ClearingHouse.ZeroAddress.selector)
        );
    }

    function test_constructor_revertsWhenNotWiredOrZero() public {
        address[] memory none = new address[](0);
        Vault stray =
            new Vault(address(0xdead), address(0xbeef), address(timelock), guardian, MAX_PAUSE, none);
        vm.expectRevert(ClearingHouse.NotWired.selector);
        new ClearingHouse(
            stray, fund, timelock, operator, guardian, _watchers(), _config(), _caps(0), _noFeeds()
        );
        vm.expectRevert(ClearingHouse.ZeroAddress.selector);
        new ClearingHouse(
            vault, fund, timelock, address(0), guardian, _watchers(), _config(), _caps(3), _noFeeds()
        );

        vm.expectRevert(EscapeHatch.NotWired.selector);
        new EscapeHatch(ch); // the vault names another hatch
    }

    function test_constructor_rolesAndConfig() public view {
        assertTrue(ch.hasRole(ch.DEFAULT_ADMIN_ROLE(), address(timelock)));
        assertTrue(ch.hasRole(ch.OPERATOR_ROLE(), operator));
        assertTrue(ch.hasRole(ch.GUARDIAN_ROLE(), guardian));
        assertTrue(ch.hasRole(ch.WATCHER_ROLE(), watcher));
        assertEq(ch.getRoleAdmin(ch.WATCHER_ROLE()), ch.DEFAULT_ADMIN_ROLE());
        assertFalse(ch.hasRole(ch.DEFAULT_ADMIN_ROLE(), address(this)));
        assertFalse(ch.hasRole(ch.OPERATOR_ROLE(), address(this)));
        assertEq(ch.freezePeriod(), FREEZE_PERIOD);
        assertEq(ch.disputeWindow(), DISPUTE_WINDOW);
        assertEq(ch.forcedWithdrawalPeriod(), FORCED_PERIOD);
        assertEq(ch.depositCreditPeriod(), CREDIT_PERIOD);
        assertEq(ch.outflowPeriod(), OUTFLOW_PERIOD);
        assertEq(ch.maxPause(), MAX_PAUSE);
        assertEq(address(ch.escapeHatch()), address(hatch));
        assertGt(timelock.delayFloor(), ch.freezePeriod());
        assertGt(timelock.delayFloor(), ch.forcedWithdrawalPeriod());
    }

    // ------------------------------------------------------------------ accepted batches

    function test_submitBatch_creditsDeposits_provesSolvency_hashesAsDocumented() public {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        ClearingHouse.Batch memory b = _batch();
        bytes32 stateRoot = keccak256(abi.encode(b.assets));
        bytes32 expected = keccak256(
            abi.encode(
                ch.BATCH_DOMAIN(),
                block.chainid,
                address(ch),
                uint64(1),
                bytes32(0),
                stateRoot,
                keccak256(b.data),
                uint48(2),
                vault.depositAccumulator(2),
                bytes32(0),
                keccak256(abi.encode(b.insuranceMoves))
            )
        );
        ClearingHouse.Ledger[] memory l = new ClearingHouse.Ledger[](3);
        l[0].credited = 10_000e6;
        l[1].credited = 5e18;
        vm.expectEmit(address(ch));
        emit ClearingHouse.BatchAccepted(1, expected, stateRoot, bytes32(0), l);
        assertEq(_submit(b), expected);
        assertEq(ch.lastBatchId(), 1);
        assertEq(ch.lastBatchHash(), expected);
        assertEq(ch.lastStateRoot(), stateRoot);
        assertEq(ch.lastCreditedDepositId(), 2);
        assertEq(ch.accountHoldings(address(usdc)), 10_000e6);
        assertEq(ch.accountHoldings(address(weth)), 5e18);
        (, bytes32 checkpoint,, uint64 acceptedAt, uint64 seq, uint48 d,) = ch.batchRecord(1);
        assertEq(checkpoint, keccak256(abi.encode(expected, l)));
        assertEq(acceptedAt, block.timestamp);
        assertEq((seq), 1);
        assertEq(d, 2);
        assertFalse(ch.isFinal(1));
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        assertTrue(ch.isFinal(1));
    }

    function test_submitBatch_chainsHashes_resetsFreezeClock() public {
        _seed();
        bytes32 h1 = ch.lastBatchHash();
        ClearingHouse.Batch memory b = _batch();
        assertEq(b.prevBatchHash, h1);
        vm.warp(block.timestamp + FREEZE_PERIOD - 1);
        bytes32 h2 = _submit(b);
        assertTrue(h2 != h1);
        vm.warp(block.timestamp + FREEZE_PERIOD - 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotStale.selector, block.timestamp + 1));
        ch.freeze(2);
    }

    function test_submitBatch_partialDepositCredit() public {
        _deposit(alice, address(usdc), 100e6);
        uint48 d2 = _depositUncredited(bob, address(usdc), 50e6); // not yet confirmed by the engine
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 100e6);
        assertEq(ch.lastCreditedDepositId(), 1);
        _credit(d2);
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 150e6);
    }

    /// Withdrawals wait out the dispute window, then anyone pays them, each exactly once.
    function test_withdrawals_queued_paidAfterWindow_once() public {
        _seed();
        _withdraw(alice, address(usdc), 1000e6);
        _withdraw(bob, address(weth), 1e18);
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 11_500e6);
        assertEq(ch.pendingPayouts(address(usdc)), 1000e6);
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        assertEq(p.length, 2);
        assertEq(p[0].destination, alice);
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        vm.expectEmit(address(ch));
        emit ClearingHouse.PayoutExecuted(2, 0, alice, address(usdc), 1000e6);
        vm.prank(dave); // anyone
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(alice), 1000e6);
        assertEq(weth.balanceOf(bob), 0);
        ch.executePayouts(2, p, 5); // clamped to the rest
        assertEq(weth.balanceOf(bob), 1e18);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NothingToExecute.selector, 2));
        ch.executePayouts(2, p, 1);
        assertEq(ch.pendingPayouts(address(usdc)), 0);
        assertEq(ch.executed(address(usdc)), 1000e6);
        _submit(); // the books still balance
    }

    function test_executePayouts_rejects() public {
        _seed();
        _withdraw(alice, address(usdc), 1000e6);
        _submit();
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BatchNotCanonical.selector, 3));
        ch.executePayouts(3, p, 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BatchNotCanonical.selector, 0));
        ch.executePayouts(0, p, 1);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.BatchNotFinal.selector, 2, block.timestamp + DISPUTE_WINDOW)
        );
        ch.executePayouts(2, p, 1);
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        p[0].destination = dave;
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.PayoutsMismatch.selector, 2));
        ch.executePayouts(2, p, 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.PayoutsMismatch.selector, 1));
        ch.executePayouts(1, new ClearingHouse.Payout[](0), 1);
        p[0].destination = alice;
        vm.prank(guardian);
        ch.pause();
        vm.expectRevert(
            abi.encodeWithSelector(ExpiringPause.EnforcedPause.selector, block.timestamp + MAX_PAUSE)
        );
        ch.executePayouts(2, p, 1);
        vm.warp(block.timestamp + MAX_PAUSE);
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(alice), 1000e6);
    }

    /// Outflow per token per period never exceeds the cap; the rest waits for the next period.
    function test_outflowCap_perTokenPerPeriod() public {
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 1500e6)));
        _seed();
        _withdraw(alice, address(usdc), 1000e6);
        _withdraw(carol, address(usdc), 1000e6);
        _withdraw(bob, address(weth), 5e18); // another token: its own cap
        _submit();
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.warp((block.timestamp / OUTFLOW_PERIOD + 1) * OUTFLOW_PERIOD); // start of a period, window passed
        ch.executePayouts(2, p, 1);
        assertEq(ch.outflowRemaining(address(usdc)), 500e6);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 1000e6, 500e6)
        );
        ch.executePayouts(2, p, 1);
        vm.warp(block.timestamp + OUTFLOW_PERIOD);
        assertEq(ch.outflowRemaining(address(usdc)), 1500e6);
        ch.executePayouts(2, p, 2);
        assertEq(usdc.balanceOf(carol), 1000e6);
        assertEq(weth.balanceOf(bob), 5e18);
    }

    /// After a freeze, payouts of final batches are no longer capped or paused: what was debited is owed.
    function test_payoutsOfFinalBatches_afterFreeze_uncapped() public {
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 0)));
        _seed();
        _withdraw(alice, address(usdc), 1000e6);
        _submit();
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 1000e6, 0)
        );
        ch.executePayouts(2, p, 1);
        _freeze();
        vm.prank(guardian);
        ch.pause();
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(alice), 1000e6);
    }

    function test_insuranceMoves_toFundDelayed_fromFundImmediate() public {
        _seed();
        _feeToFund(alice, address(usdc), 300e6);
        _submit();
        assertEq(fund.expectedBalance(address(usdc)), 0, "waits for the window");
        assertEq(ch.accountHoldings(address(usdc)), 12_200e6);
        vm.expectEmit(address(fund));
        emit InsuranceFund.BatchInflow(2, address(usdc), 300e6, 300e6);
        _payOut();
        assertEq(fund.expectedBalance(address(usdc)), 300e6);
        assertEq(usdc.balanceOf(address(vault)), 12_200e6);

        _coverFromFund(carol, address(usdc), 120e6);
        vm.expectEmit(address(fund));
        emit InsuranceFund.BatchOutflow(3, address(usdc), 120e6, 180e6);
        _submit();
        assertEq(usdc.balanceOf(address(vault)), 12_320e6);
        assertEq(ch.accountHoldings(address(usdc)), 12_320e6);
    }

    function test_newlyListedToken_mustBeCommitted() public {
        _seed();
        TestTokenLike extra = new TestTokenLike();
        _governance(address(ch), abi.encodeCall(ClearingHouse.listToken, (address(extra), BIG_CAP)));
        priceOf[address(extra)] = 1e6;
        ClearingHouse.Batch memory b = _batch();
        ClearingHouse.AssetState[] memory short = new ClearingHouse.AssetState[](3);
        for (uint256 i; i < 3; ++i) {
            short[i] = b.assets[i];
        }
        ClearingHouse.Batch memory bad = _batch();
        bad.assets = short;
        _rejects(bad, abi.encodeWithSelector(ClearingHouse.AssetListMismatch.selector));
        _submit(b);
    }

    /// Liabilities: alice owes 1,000 USDC against her WETH; bob holds the 1,000 USDC she lost to him. The vault holds
    /// no USDC: claims 1,000 - liabilities 1,000 == holdings 0.
    function test_liabilities_claimsMinusLiabilitiesEqualsHoldings() public {
        _deposit(alice, address(weth), 1e18);
        _submit();
        debt[address(usdc)][alice] = 1000e6;
        bal[address(usdc)][bob] = 1000e6;
        _submit();
        assertEq(ch.accountHoldings(address(usdc)), 0);
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].liabilitiesTotal -= 1; // claims no longer net to the holdings
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.SolvencyMismatch.selector, address(usdc), 1000e6, 1000e6 - 1, 0
            )
        );
    }

    // ------------------------------------------------------------------ signed withdrawals

    function test_withdrawal_rejects() public {
        _seed();
        bal[address(usdc)][alice] -= 1e6;
        ClearingHouse.SignedWithdrawal memory w = _signed(alice, address(usdc), 1e6, alice);

        ClearingHouse.Batch memory b = _oneWithdrawal(w);
        b.withdrawals[0].token = address(0xbad);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, address(0xbad)));
        b = _oneWithdrawal(w);
        b.withdrawals[0].amount = 0;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroAmount.selector));
        b = _oneWithdrawal(w);
        b.withdrawals[0].destination = address(0);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroDestination.selector));
        b = _oneWithdrawal(w);
        b.withdrawals[0].signature = hex"1234";
        _rejects(b, abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, w.nonce));
        b = _oneWithdrawal(w);
        b.withdrawals[0].nonce += 1; // signed for another nonce
        _rejects(b, abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, alice, w.nonce + 1));

        vm.warp(w.expiry + 1);
        b = _oneWithdrawal(w);
        _rejects(
            b, abi.encodeWithSelector(ClearingHouse.WithdrawalExpired.selector, alice, w.nonce, w.expiry)
        );
    }

    /// The account burns a nonce to cancel a signed withdrawal the engine holds.
    function test_withdrawal_cancelledByInvalidatingItsNonce() public {
        _seed();
        bal[address(usdc)][alice] -= 1e6;
        ClearingHouse.SignedWithdrawal memory w = _signed(alice, address(usdc), 1e6, alice);
        vm.expectEmit(address(ch));
        emit ClearingHouse.NoncesInvalidated(alice, w.nonce >> 8, 1 << (w.nonce & 255));
        vm.prank(alice);
        ch.invalidateNonces(w.nonce >> 8, 1 << (w.nonce & 255));
        assertTrue(ch.nonceUsed(alice, w.nonce));
        _rejects(
            _oneWithdrawal(w), abi.encodeWithSelector(ClearingHouse.NonceAlreadyUsed.selector, alice, w.nonce)
        );
    }

    /// Nonces are unordered: any unused one works, in any order.
    function test_withdrawal_noncesUnordered() public {
        _seed();
        nextNonce[alice] = 1000;
        _withdraw(alice, address(usdc), 1e6);
        nextNonce[alice] = 3;
        _withdraw(alice, address(usdc), 1e6);
        _submit();
        assertTrue(ch.nonceUsed(alice, 1000));
        assertTrue(ch.nonceUsed(alice, 3));
        assertFalse(ch.nonceUsed(alice, 4));
    }

    /// A smart account (ERC-1271) authorises its withdrawals by approving the digest; it can also refuse.
    function test_withdrawal_erc1271SmartAccount() public {
        (address owner, uint256 ownerKey) = makeAddrAndKey("passkey-owner");
        MockSmartAccount sa = new MockSmartAccount(owner);
        address acct = address(sa);
        actors.push(acct);
        _deposit(acct, address(usdc), 500e6);
        _submit();
        bal[address(usdc)][acct] -= 200e6;
        ClearingHouse.SignedWithdrawal memory w = ClearingHouse.SignedWithdrawal(
            acct, address(usdc), 200e6, owner, 0, block.timestamp + 1 days, ""
        );
        w.signature = _sign(ownerKey, ch.withdrawalDigest(acct, address(usdc), 200e6, owner, 0, w.expiry));
        vm.prank(owner);
        sa.setRefuseAll(true);
        _rejects(_oneWithdrawal(w), abi.encodeWithSelector(ClearingHouse.InvalidSignature.selector, acct, 0));
        vm.prank(owner);
        sa.setRefuseAll(false);
        pendingW.push(w);
        _submit();
        _payOut();
        assertEq(usdc.balanceOf(owner), 200e6);
        // the owner's key alone is not the account: a plain ECDSA signature for the owner's own address cannot move
        // the smart account's funds (the account field is what the batch debits)
    }

    function test_withdrawalDigest_isEip712() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
                ),
                keccak256("hx ClearingHouse"),
                keccak256("2"),
                block.chainid,
                address(ch)
            )
        );
        bytes32 structHash =
            keccak256(abi.encode(ch.WITHDRAWAL_TYPEHASH(), alice, address(usdc), 5, bob, 7, uint256(9)));
        assertEq(
            ch.withdrawalDigest(alice, address(usdc), 5, bob, 7, 9),
            keccak256(abi.encodePacked("\x19\x01", domain, structHash))
        );
    }

    // ------------------------------------------------------------------ rejected batches

    function test_reject_nonOperator_paused_frozen() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        address[4] memory who = [guardian, governor, address(timelock), alice];
        for (uint256 i; i < who.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IAccessControl.AccessControlUnauthorizedAccount.selector, who[i], ch.OPERATOR_ROLE()
                )
            );
            vm.prank(who[i]);
            ch.submitBatch(b);
        }
        vm.prank(guardian);
        ch.pause();
        _rejects(b, abi.encodeWithSelector(ExpiringPause.EnforcedPause.selector, block.timestamp + MAX_PAUSE));
        vm.warp(block.timestamp + FREEZE_PERIOD);
        ch.freeze(1);
        _rejects(_batch(), abi.encodeWithSelector(ClearingHouse.ExchangeFrozen.selector));
    }

    function test_reject_chain() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.batchId = 3;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BatchIdNotNext.selector, 2, 3));
        b.batchId = 1;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BatchIdNotNext.selector, 2, 1));
        b = _batch();
        b.prevBatchHash = keccak256("fork");
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.PrevBatchHashMismatch.selector, ch.lastBatchHash(), b.prevBatchHash
            )
        );
    }

    function test_reject_deposits() public {
        _seed();
        _deposit(dave, address(usdc), 1e6);
        ClearingHouse.Batch memory b = _batch();
        b.lastCreditedDepositId = 2;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositIdRegressed.selector, 3, 2));
        b.lastCreditedDepositId = 5;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositNotMade.selector, 4, 5));
        b = _batch();
        b.deposits = new ClearingHouse.DepositRecord[](0);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositCountMismatch.selector, 1, 0));
        b = _batch();
        b.deposits[0].amount = 2e6; // the engine credits more than was deposited
        _rejects(b, abi.encodeWithSelector(ClearingHouse.DepositAccumulatorMismatch.selector, 4));
    }

    function test_reject_assets_prices_data() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        (b.assets[0], b.assets[1]) = (b.assets[1], b.assets[0]);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.AssetListMismatch.selector));
        b = _batch();
        b.assets[1].price = 0;
        _rejects(b, abi.encodeWithSelector(ClearingHouse.PriceOutOfRange.selector, address(weth), 0));
        b.assets[1].price = Valuation.MAX_PRICE + 1;
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.PriceOutOfRange.selector, address(weth), Valuation.MAX_PRICE + 1
            )
        );
        b = _batch();
        b.data = hex"68786431";
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BadPublishedData.selector));
        b.data = abi.encodePacked(bytes4(0x68786432), uint64(2), uint8(3));
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BadPublishedData.selector));
        b.data = abi.encodePacked(bytes4(0x68786431), uint64(3), uint8(3));
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BadPublishedData.selector));
        b.data = abi.encodePacked(bytes4(0x68786431), uint64(2), uint8(2));
        _rejects(b, abi.encodeWithSelector(ClearingHouse.BadPublishedData.selector));
    }

    /// A claims total that cannot be valued in uint256 at its price is refused: no escape computation can overflow.
    function test_reject_valueOverflow() public {
        uint256 huge = type(uint256).max / 1e17; // value = huge * 1e18 > 2^256
        _deposit(alice, address(usdc), huge);
        ClearingHouse.Batch memory b = _batch();
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ValueOverflow.selector, address(usdc)));
    }

    function test_reject_totalsNotMatchingTheBooks() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].claimsTotal += 1;
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.SolvencyMismatch.selector, address(usdc), 12_500e6 + 1, 0, 12_500e6
            )
        );
        b.assets[0].claimsTotal -= 2;
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.SolvencyMismatch.selector, address(usdc), 12_500e6 - 1, 0, 12_500e6
            )
        );
        b = _batch();
        b.assets[0].liabilitiesTotal = type(uint256).max;
        _rejects(
            b,
            abi.encodeWithSelector(
                ClearingHouse.SolvencyMismatch.selector, address(usdc), 12_500e6, type(uint256).max, 12_500e6
            )
        );
    }

    function test_reject_outflowAboveHoldings() public {
        _seed();
        vm.prank(bob);
        bal[address(weth)][bob] = 0;
        ClearingHouse.SignedWithdrawal memory w = _signed(bob, address(weth), 5e18 + 1, bob);
        _rejects(
            _oneWithdrawal(w),
            abi.encodeWithSelector(
                ClearingHouse.OutflowExceedsHoldings.selector, address(weth), 5e18 + 1, 5e18
            )
        );
    }

    function test_reject_insuranceMoves() public {
        _seed();
        ClearingHouse.Batch memory b = _batch();
        b.insuranceMoves = new ClearingHouse.InsuranceMove[](1);
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(0xbad), 1);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, address(0xbad)));
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(usdc), 0);
        _rejects(b, abi.encodeWithSelector(ClearingHouse.ZeroAmount.selector));
        b.insuranceMoves[0] = ClearingHouse.InsuranceMove(address(usdc), -1);
        _rejects(
            b, abi.encodeWithSelector(InsuranceFund.InsufficientFundBalance.selector, address(usdc), 1, 0)
        );
    }

    // ------------------------------------------------------------------ challenges

    function test_challenge_rollsBackLedgerAndReturnsFundInflows() public {
        _seed();
        _feeToFund(alice, address(usdc), 300e6);
        _submit();
        _payOut(); // batch 2 final: the fund holds 300
        uint256 vaultBefore = usdc.balanceOf(address(vault));
        _coverFromFund(carol, address(usdc), 100e6); // batch 3: fund -> vault at once
        _deposit(dave, address(usdc), 7e6);
        _withdraw(alice, address(usdc), 50e6);
        _submit();
        _submit(); // batch 4 on top of it
        assertEq(fund.expectedBalance(address(usdc)), 200e6);

        vm.expectEmit(address(ch));
        emit ClearingHouse.BatchesRolledBack(3, 4, watcher);
        _challenge(watcher, 3);
        assertEq(ch.lastBatchId(), 2);
        assertEq(ch.lastBatchHash(), hashAt[2]);
        assertEq(ch.lastCreditedDepositId(), 3);
        assertEq(ch.accountHoldings(address(usdc)), 12_200e6);
        assertEq(ch.pendingPayouts(address(usdc)), 0);
        assertEq(fund.expectedBalance(address(usdc)), 300e6, "cover returned to the fund");
        assertEq(usdc.balanceOf(address(vault)), vaultBefore + 7e6);

        // the operator continues from batch 2 with the engine's real state (no cover, dave's deposit re-credited,
        // alice's withdrawal re-signed: the old nonce stays consumed)
        bal[address(usdc)][carol] -= 100e6;
        fundModel[address(usdc)] += 100e6;
        bal[address(usdc)][alice] += 50e6;
        _withdraw(alice, address(usdc), 50e6);
        _submit();
        assertEq(ch.lastBatchId(), 3);
        _payOut();
        assertEq(usdc.balanceOf(alice), 50e6);
    }

    function test_challenge_rejects_and_genesis() public {
        _seed();
        ClearingHouse.Ledger[] memory none = new ClearingHouse.Ledger[](0);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotChallenger.selector, operator));
        vm.prank(operator);
        ch.challengeBatch(1, 0, none);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BatchNotCanonical.selector, 2));
        vm.prank(guardian);
        ch.challengeBatch(2, 0, none);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.CheckpointMismatch.selector, 0));
        vm.prank(guardian);
        ch.challengeBatch(1, keccak256("x"), none);
        _challenge(guardian, 1); // back to the genesis: nothing credited
        assertEq(ch.lastBatchId(), 0);
        assertEq(ch.accountHoldings(address(usdc)), 0);
        _submit();
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.BatchFinal.selector, 1));
        vm.prank(guardian);
        ch.challengeBatch(1, 0, none);
        vm.warp(block.timestamp + FREEZE_PERIOD);
        ch.freeze(1);
        vm.expectRevert(ClearingHouse.ExchangeFrozen.selector);
        vm.prank(guardian);
        ch.challengeBatch(1, 0, none);
    }

    function test_guardianRemovesWatcher_onlyGovernanceAdds() public {
        bytes32 role = ch.WATCHER_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, bytes32(0)
            )
        );
        vm.prank(guardian);
        ch.grantRole(role, dave);
        vm.prank(guardian);
        ch.removeWatcher(watcher);
        assertFalse(ch.hasRole(role, watcher));
        _seed();
        ClearingHouse.Ledger[] memory none = new ClearingHouse.Ledger[](0);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotChallenger.selector, watcher));
        vm.prank(watcher);
        ch.challengeBatch(1, 0, none);
    }

    // ------------------------------------------------------------------ freeze

    function test_freeze_rules() public {
        _seed();
        uint256 at = uint256(ch.lastBatchAt()) + FREEZE_PERIOD;
        vm.warp(at - 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotStale.selector, at));
        ch.freeze(1);
        vm.warp(at);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.EscapeBatchInvalid.selector, 2));
        ch.freeze(2);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotLatestFinalBatch.selector, 0, 1));
        ch.freeze(0);
        vm.expectEmit(address(ch));
        emit ClearingHouse.Frozen(1, ch.lastStateRoot(), dave, 1, 0);
        vm.prank(dave);
        ch.freeze(1);
        assertTrue(ch.frozen());
        assertEq(ch.escapeBatchId(), 1);
        vm.expectRevert(ClearingHouse.ExchangeFrozen.selector);
        ch.freeze(1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NotEscapeHatch.selector, address(this)));
        ch.freezeForRequest(1, 1);
    }

    /// A freeze voids the batches still inside their window; their insurance inflows go back to the fund.
    function test_freeze_voidsYoungBatches_returnsTheirFundInflows() public {
        _seed();
        _feeToFund(alice, address(usdc), 300e6);
        _submit();
        _payOut();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1e6, alice);
        vm.warp(block.timestamp + FORCED_PERIOD);
        _coverFromFund(carol, address(usdc), 100e6);
        _submit(); // batch 3, young
        hatch.freezeForUnservedRequest(rid, 2);
        assertEq(ch.lastBatchId(), 2);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.CheckpointMismatch.selector, 2));
        ch.returnVoidedFundInflows(hashAt[3], ledgersAt[3]);
        ch.returnVoidedFundInflows(hashAt[2], ledgersAt[2]);
        assertEq(fund.expectedBalance(address(usdc)), 300e6);
        ch.returnVoidedFundInflows(hashAt[2], ledgersAt[2]); // idempotent
        assertEq(fund.expectedBalance(address(usdc)), 300e6);
        assertEq(usdc.balanceOf(address(vault)), 12_200e6);
    }

    function test_returnVoidedFundInflows_onlyWhenFrozen() public {
        vm.expectRevert(ClearingHouse.ExchangeNotFrozen.selector);
        ch.returnVoidedFundInflows(0, new ClearingHouse.Ledger[](0));
    }

    function test_setOutflowCap_onlyGovernance_listedOnly() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, bytes32(0)
            )
        );
        vm.prank(guardian);
        ch.setOutflowCap(address(usdc), 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.TokenNotListed.selector, address(0xbad)));
        vm.prank(address(timelock));
        ch.setOutflowCap(address(0xbad), 1);
    }
}

/// @notice Any ERC-20 with 6 decimals (for listing tests).
contract TestTokenLike {
    function decimals() external pure returns (uint8) {
        return 6;
    }

    function balanceOf(address) external pure returns (uint256) {
        return 0;
    }
}
